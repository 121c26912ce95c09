"""Run usersctl as ``python -m usersctl``; ``entry`` is also the console script."""


def entry() -> None:
    """Start the command line. Ctrl-C while its modules load is exit 130 with one line too, not
    a traceback from the middle of an import."""
    try:
        from usersctl.commands import main
    except KeyboardInterrupt:
        import sys

        sys.stderr.write("Error: interrupted\n")
        raise SystemExit(130) from None
    main()


if __name__ == "__main__":
    entry()
