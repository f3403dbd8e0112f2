"""One module per leg of the demo, discovered by name; each has ``TITLE``, ``ORDER`` and
``run() -> str | None`` (``None`` when it ran, else why it was skipped). A leg runs inside the
demo's root transaction and must finish all its work, consumers included, before it returns.
"""
