"""The pipeline's Spark session (resources/spark.py) over a long run: the driver keeps a bounded
history of finished work, so its live heap does not grow with the number of slices."""

from __future__ import annotations

from crypto_assets.resources.spark import STATUS_RETAINED


def test_the_driver_forgets_old_jobs_and_queries_so_a_long_run_does_not_fill_its_heap(spark):
    jobs, queries = (
        int(STATUS_RETAINED["spark.ui.retainedJobs"]),
        int(STATUS_RETAINED["spark.sql.ui.retainedExecutions"]),
    )
    for _ in range(jobs + 30):  # each a SQL query and a job, as a slice's are
        spark.range(3).selectExpr("sum(id)").collect()
    assert len(spark.sparkContext.statusTracker().getJobIdsForGroup(None)) <= jobs
    assert spark._jsparkSession.sharedState().statusStore().executionsCount() <= queries
