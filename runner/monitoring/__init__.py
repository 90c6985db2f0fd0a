"""What the runs leave behind for people and machines: the run history, each source's status,
alerts, Prometheus metrics, the dashboard, and the reporting that follows every command."""
