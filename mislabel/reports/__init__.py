"""What a run tells its user: summaries, find_issues' report and actions, plots."""
