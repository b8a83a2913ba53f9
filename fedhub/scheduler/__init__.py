"""Scheduled notebooks: jobs that run papermill on a schedule as their owner's Unix account.

The core of the scheduler service (``fedhub.services.scheduler``): the tables
(:mod:`.models`), cron schedules with time zones (:mod:`.schedule`), the tier's limits
(:mod:`.limits`), the claim of due runs in the database (:mod:`.claims`) and the child
process that executes one run as the owner (:mod:`.runner`, :mod:`.execute`).
docs/reports.md, "Scheduled notebooks", describes the whole.
"""
