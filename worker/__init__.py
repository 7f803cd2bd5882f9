"""The CloudAI worker: registers, heartbeats, runs tasks as Docker containers."""
