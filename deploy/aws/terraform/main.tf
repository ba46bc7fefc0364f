# Least-privilege wiring for auditwatch's CloudTrail sources:
# S3 (the trail's bucket) -> SQS notification -> auditwatch (s3sqs source),
# plus cloudtrail:LookupEvents for the poller and cloudtrail:ListPublicKeys
# for digest signature checks (trail validation). Adjust the variables; nothing
# here creates the trail itself.
#
# The s3sqs source only calls s3:GetObject, sqs:ReceiveMessage,
# sqs:DeleteMessage and sqs:ChangeMessageVisibility (it extends the
# visibility of a message while a large object is still being read); the
# lookup source only cloudtrail:LookupEvents; trail validation (digest
# files) only cloudtrail:ListPublicKeys. Nothing else is granted.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "trail_bucket" {
  type        = string
  description = "Name of the S3 bucket the trail delivers to."
}

variable "trail_prefix" {
  type    = string
  default = "AWSLogs/"
}

variable "trail_kms_key_arn" {
  type        = string
  description = "ARN of the KMS key the trail encrypts objects with (SSE-KMS)."
}

variable "region" {
  type    = string
  default = "us-east-1"
}

data "aws_caller_identity" "current" {}

resource "aws_sqs_queue" "auditwatch" {
  name                       = "auditwatch-cloudtrail"
  visibility_timeout_seconds = 300     # the s3sqs source's visibility_timeout default (5m); it extends it while reading
  message_retention_seconds  = 1209600 # 14 days: an outage of auditwatch loses nothing
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.auditwatch_dlq.arn
    maxReceiveCount     = 10
  })
}

resource "aws_sqs_queue" "auditwatch_dlq" {
  name                      = "auditwatch-cloudtrail-dlq"
  message_retention_seconds = 1209600
}

resource "aws_sqs_queue_policy" "auditwatch" {
  queue_url = aws_sqs_queue.auditwatch.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AllowTrailBucketNotifications"
      Effect    = "Allow"
      Principal = { Service = "s3.amazonaws.com" }
      Action    = "sqs:SendMessage"
      Resource  = aws_sqs_queue.auditwatch.arn
      Condition = {
        ArnEquals    = { "aws:SourceArn" = "arn:aws:s3:::${var.trail_bucket}" }
        StringEquals = { "aws:SourceAccount" = data.aws_caller_identity.current.account_id }
      }
    }]
  })
}

# aws_s3_bucket_notification owns ALL notifications of the bucket: if the
# trail bucket already notifies something else, add those targets here too
# or they are removed.
resource "aws_s3_bucket_notification" "trail" {
  bucket = var.trail_bucket
  queue {
    id            = "auditwatch-cloudtrail-objects"
    queue_arn     = aws_sqs_queue.auditwatch.arn
    events        = ["s3:ObjectCreated:*"]
    filter_prefix = var.trail_prefix
    filter_suffix = ".json.gz"
  }
  depends_on = [aws_sqs_queue_policy.auditwatch]
}

resource "aws_iam_policy" "auditwatch" {
  name = "auditwatch-read-cloudtrail"
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadTrailObjects"
        Effect   = "Allow"
        Action   = ["s3:GetObject"]
        Resource = "arn:aws:s3:::${var.trail_bucket}/${var.trail_prefix}*"
      },
      {
        Sid      = "ConsumeTrailNotifications"
        Effect   = "Allow"
        Action   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
        Resource = aws_sqs_queue.auditwatch.arn
      },
      {
        Sid       = "DecryptTrailObjects"
        Effect    = "Allow"
        Action    = ["kms:Decrypt"]
        Resource  = var.trail_kms_key_arn
        Condition = { StringEquals = { "kms:ViaService" = "s3.${var.region}.amazonaws.com" } }
      },
      {
        Sid      = "PollRecentEvents"
        Effect   = "Allow"
        Action   = ["cloudtrail:LookupEvents"]
        Resource = "*"
      },
      {
        Sid      = "VerifyDigestSignatures"
        Effect   = "Allow"
        Action   = ["cloudtrail:ListPublicKeys"]
        Resource = "*"
      }
    ]
  })
}

output "queue_url" {
  value = aws_sqs_queue.auditwatch.id
}

output "policy_arn" {
  value = aws_iam_policy.auditwatch.arn
}
