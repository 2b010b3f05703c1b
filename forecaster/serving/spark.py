"""Deprecated alias of `forecaster.spark` (the Spark engine), kept for code that imported it from here."""

from forecaster.spark import PARTITION_COLUMN, SKIPPED_EXISTING, WRITTEN, predict_spark, spark_session, stage_spark

__all__ = ["PARTITION_COLUMN", "SKIPPED_EXISTING", "WRITTEN", "predict_spark", "spark_session", "stage_spark"]
