"""Where the notebooks live on GitHub, kept in one place for Colab badges."""
from __future__ import annotations

REPOSITORY = "drill-down-kit/drill-down-kit"  # owner/name on GitHub; change it here when the repository moves
BRANCH = "main"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"


def url(path: str, repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    """The Colab URL that opens `path` (relative to the repository root) from GitHub."""
    return f"https://colab.research.google.com/github/{repository}/blob/{branch}/{path}"


def badge(path: str) -> str:
    """The "Open in Colab" badge, as Markdown, for the notebook at `path`."""
    return f"[![Open In Colab]({BADGE_IMAGE})]({url(path)})"
