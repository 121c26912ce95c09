"""Run a command and report its wall time, peak resident memory and exit status.

    python -S peak_rss.py REPORT_FILE COMMAND [ARG ...]

A process inherits the peak RSS of the process that forked it (Linux records the old memory's
high-water mark at exec), so a benchmark process holding 150 MB would see every child it starts
at 150 MB or more. This small process starts the command instead. The report is one line:
``seconds max_rss_kilobytes exit_code``.
"""

import os
import sys
import time

report, *command = sys.argv[1:]
start = time.perf_counter()
pid = os.posix_spawnp(command[0], command, os.environ)
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter() - start
with open(report, "w") as out:
    out.write(f"{elapsed} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}\n")
