"""Security for CloudAI: certificates, tokens and roles, the auth interceptor,
secret sealing, image admission and checks of hostile input.

See docs/security.md for the threat model and how to deploy with mTLS and tokens.
"""
