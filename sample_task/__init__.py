"""The sample task's image sources (Dockerfile, task.py), installed as cloudai.sample_task.

`docker build -t cloudai/sample-task:latest DIR` with DIR this folder builds the image that
`cloudai demo` runs; `cloudai demo` names DIR when the image is missing.
"""
