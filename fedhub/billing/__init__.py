"""Billing: usage from the meter priced into invoices per tenant, exactly once.

The pieces, in the order money flows through them:

- :mod:`~fedhub.billing.clock`: where "now" comes from (tests move through months);
- :mod:`~fedhub.billing.pricebook`: what each tier charges, from ``tiers.yaml`` plus a
  tenant's negotiated overrides;
- :mod:`~fedhub.billing.subscriptions`: which tier a tenant had on which day;
- :mod:`~fedhub.billing.rating`: usage of one period → invoice lines (pure, no writes);
- :mod:`~fedhub.billing.invoices`: drafts, finalization after a grace period, late
  usage reconciled into next-period lines or credit notes, never an edit;
- :mod:`~fedhub.billing.budgets`: 80 %/100 % alerts as audit events;
- :mod:`~fedhub.billing.ingest`: the external events API's validation and its
  one-transaction-per-batch write;
- :mod:`~fedhub.billing.render`: HTML and PDF.

Money is :class:`decimal.Decimal`, rounded half-up to cents once per line; see
:mod:`~fedhub.billing.money`.
"""
