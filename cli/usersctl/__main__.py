"""Run usersctl as ``python -m usersctl``."""

from usersctl.commands import main

main()
