"""The command lines (runner.py's flags, compare, find_issues): thin callers of the library and the
Runner.
"""
