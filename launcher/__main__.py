"""`python -m launcher`: the same as the `tabagent` command."""

from launcher.cli import main

raise SystemExit(main())
