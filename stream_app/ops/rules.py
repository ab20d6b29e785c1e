"""The Prometheus alert rules as shipped and as a deployment renders them: every alert's ``runbook_url``
is an absolute address (a link a pager or Alertmanager can open), the runbook's published address
(``STREAM_APP_RUNBOOK_URL``) plus the alert's anchor in docs/runbook.md, its name in lower case.

The rules file in deploy/prometheus/rules/ is itself the rendering with the default address, so Prometheus,
promtool and its unit tests read it as it is; `stream-app monitoring render-rules` writes it again with a
deployment's own address. The rendering is textual, line by line: the file's comments survive it.
"""

from __future__ import annotations

import re

# A rule's runbook annotation, as the rules file writes it: one line, the address in double quotes.
_RUNBOOK_LINE = re.compile(r'^(?P<indent>\s+runbook_url: )"(?P<url>[^"#]*)#(?P<anchor>[^"]+)"$', re.MULTILINE)


def runbook_anchors(rules: str) -> list[str]:
    """Every ``runbook_url`` anchor of a rules file, in order."""
    return [match["anchor"] for match in _RUNBOOK_LINE.finditer(rules)]


def runbook_urls(rules: str) -> list[str]:
    """Every ``runbook_url`` of a rules file, in order."""
    return [f"{match['url']}#{match['anchor']}" for match in _RUNBOOK_LINE.finditer(rules)]


def render_rules(rules: str, runbook_url: str) -> str:
    """The rules file with every ``runbook_url`` at ``runbook_url`` (the runbook's address, no anchor),
    each keeping its own anchor."""
    return _RUNBOOK_LINE.sub(lambda match: f'{match["indent"]}"{runbook_url}#{match["anchor"]}"', rules)
