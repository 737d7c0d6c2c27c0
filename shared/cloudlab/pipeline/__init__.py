"""The capstone: a content-moderation pipeline as a real serverless application (notebook 06).

One SAM template, one folder per function, a Lambda layer of shared code
(``layers/common/python/moderation``), the local deployer and ``python -m cloudlab pipeline run``.
"""
