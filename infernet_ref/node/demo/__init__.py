"""The one-command local swarm demo (issue 8 item 8): ``infernet demo [--json]``.

``scenario`` holds the steps, ``swarm`` the process supervision, ``run`` drives them with
guaranteed cleanup, ``report`` prints the summary. Heavy imports happen inside the steps.
"""

from infernet_ref.node.demo.report import format_report
from infernet_ref.node.demo.run import run_demo
from infernet_ref.node.demo.scenario import DemoOptions

__all__ = ["DemoOptions", "format_report", "run_demo"]
