"""`plan`: what a revision changes for each fleet, for review (pure: snapshots in, a Plan out)."""

from reconciler.plan.diff import BlastRadius, FleetPlan, Plan, ResourceChanges, RouteChange, compute_plan
from reconciler.plan.render import render

__all__ = ["BlastRadius", "FleetPlan", "Plan", "ResourceChanges", "RouteChange", "compute_plan", "render"]
