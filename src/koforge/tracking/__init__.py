"""MLflow glue shared by every training and evaluation command."""
from koforge.tracking.mlflow_run import TrackedRun, default_tracking_uri, log_result, tracked_run

__all__ = ["TrackedRun", "default_tracking_uri", "log_result", "tracked_run"]
