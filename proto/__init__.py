"""Generated protobuf and gRPC code for package cloudai.v1 (see scripts/gen_proto.py)."""
