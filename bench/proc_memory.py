"""This process's memory, as Linux reports it: RSS, its peak, and resetting the peak.
Shared by the bench scripts that set their RSS beside another way's."""


def status_bytes(field):
    """A kB field of /proc/self/status (VmRSS, VmHWM) in bytes; 0 where it is missing."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def rss_bytes():
    return status_bytes("VmRSS")


def peak_rss_bytes():
    return status_bytes("VmHWM")


def reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux 4.0+), so each measurement has its own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
