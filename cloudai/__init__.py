"""CloudAI: an agent-driven container scheduling platform.

The repository folders master/, worker/, agent/ and proto/ are installed as
cloudai.master, cloudai.worker, cloudai.agent and cloudai.proto.
"""

__version__ = "0.1.0"
