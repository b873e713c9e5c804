"""Creates what the local run's compute environment and data links point at, in the
emulator: an AWS Batch job queue (`studios-local`), the work bucket for checkpoints
(`studios-local-work`) and the demo data bucket (`studios-demo-data`). Prints the queue ARN."""

import os

import boto3

kw = {"endpoint_url": os.environ["AWS_ENDPOINT_URL"], "region_name": os.environ.get("AWS_REGION", "us-east-1")}
iam = boto3.client("iam", **kw)
batch = boto3.client("batch", **kw)
s3 = boto3.client("s3", **kw)

role = iam.create_role(RoleName="studios-local-batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
ce = batch.create_compute_environment(
    computeEnvironmentName="studios-local", type="UNMANAGED", state="ENABLED", serviceRole=role
)["computeEnvironmentArn"]
queue = batch.create_job_queue(
    jobQueueName="studios-local",
    state="ENABLED",
    priority=1,
    computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
)["jobQueueArn"]
s3.create_bucket(Bucket="studios-local-work")
s3.create_bucket(Bucket="studios-demo-data")
for key in ["reads/sample-1_R1.fastq.gz", "reads/sample-1_R2.fastq.gz", "reference/grch38/genome.fa"]:
    s3.put_object(Bucket="studios-demo-data", Key=key, Body=b"demo\n")
print(queue)
