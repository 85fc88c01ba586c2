"""User-facing errors: one line naming the value, what is allowed and how to fix it."""


class FedlabError(ValueError):
    """A problem with the user's input; the CLI prints it on one line and exits with code 2.

    Parameters
    ----------
    message : str
        What was wrong, what is allowed, and how to fix it.
    """


class RunStopped(RuntimeError):
    """Raised inside a run to stop it cleanly, keeping every finished round."""
