"""Site deliveries into the warehouse: validation, privacy guard, pseudonyms, ledger, quarantine."""

from poem_registry.ingest.loader import BatchOutcome, IngestSummary, ingest, new_run_id

__all__ = ["BatchOutcome", "IngestSummary", "ingest", "new_run_id"]
