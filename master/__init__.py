"""The CloudAI master: control plane and only writer of cluster state."""
