"""What a run did: counts the progress display and the end-of-run summary read."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .client import StripeApi


@dataclass
class RunStats:
    """Counts a progress display and the end-of-run summary read (never the other way)."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    rows: Counter[str] = field(default_factory=Counter)  # "coupons/list" -> rows
    changes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (type, action) events
    notes: list[str] = field(default_factory=list)
    apis: list[StripeApi] = field(default_factory=list)  # one client per account
    accounts: list[str] = field(default_factory=list)  # the accounts the run reads
    failed_accounts: dict[str, str] = field(default_factory=dict)  # account -> why
    started: float = field(default_factory=time.monotonic)

    @property
    def requests(self) -> int:
        """API requests made so far, retries included."""
        return sum(api.requests_made for api in list(self.apis))

    @property
    def retries(self) -> int:
        """Requests tried again (429, 5xx, connection errors)."""
        return sum(api.retries for api in list(self.apis))

    def note(self, message: str) -> None:
        """Something the user should read in the output (e.g. a full re-listing)."""
        if message not in self.notes:
            self.notes.append(message)
