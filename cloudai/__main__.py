"""`python -m cloudai` is the `cloudai` command."""

from cloudai.cli.main import main

main()
