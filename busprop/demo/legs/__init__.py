"""One module per leg of the demo, discovered by name; each has ``TITLE``, ``ORDER`` and
``run() -> str | None``. ``run`` returns ``None`` when the leg ran, and a reason when it was
skipped because something it needs is missing: its client package, or a broker that is not
reachable. Anything else that goes wrong raises: the demo reports that leg as failed, distinctly
from a skip, and exits with status 1, so a broken leg can never pass for a missing broker. A leg
runs inside the demo's root transaction and must finish all its work, consumers included, before
it returns.
"""
