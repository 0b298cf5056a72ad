"""Web-service deployments: an image served by supervised replicas behind a load-balancing front."""

from airflow_aml.deployments.config import AutoscaleConfig, DeploymentConfig
from airflow_aml.deployments.deployment import Deployment

__all__ = ["AutoscaleConfig", "Deployment", "DeploymentConfig"]
