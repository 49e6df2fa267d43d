"""leadflow's reference HTTP service: the seed's endpoints behind JWT bearer authentication,
100 requests per minute per user, the store chosen by URL, the periodic jobs in the app's
lifespan (or in their own process). See README.md beside this file."""
