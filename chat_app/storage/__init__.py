"""Object stores behind one small interface: LocalStore (a folder) and S3Store (boto3)."""
