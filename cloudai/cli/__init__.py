"""The `cloudai` command-line interface.

gRPC's C core logs its own lines on stderr (`E1130 ... Invalid private key`,
`I1130 ... Handshake failed`) before our one-line message says the same in plain
words. Its logging is off unless the user sets GRPC_VERBOSITY (DEBUG, INFO, ERROR):
this runs before anything under cloudai.cli imports grpc, which reads it once.
Our own messages are printed by Python and are not affected.
"""

import os

os.environ.setdefault("GRPC_VERBOSITY", "NONE")
