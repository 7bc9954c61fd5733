"""The one exception type that means "the user gave us something wrong".

Its message is a single line meant for people; the command line prints it
without a traceback and exits non-zero, the docker shows it in its status line.
"""


class UserError(Exception):
    pass

