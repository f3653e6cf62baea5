"""Prefect 3 flows (extract, train, score, evaluate) over the SentiFlow library; deployments in prefect.yaml."""
