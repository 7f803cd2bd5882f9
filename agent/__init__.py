"""The CloudAI placement agent (sidecar), policy library and offline tools."""
