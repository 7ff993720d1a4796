__version__ = '0.1.0'


def parse_version_info(version_str):
    """Parse a version string like '0.1.0' into a tuple of ints/strs."""
    info = []
    for part in version_str.split('.'):
        info.append(int(part) if part.isdigit() else part)
    return tuple(info)


version_info = parse_version_info(__version__)
