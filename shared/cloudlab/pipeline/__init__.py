"""The capstone: a content-moderation pipeline as a serverless application (notebook 06).

One function per folder under ``functions/``, shared code in the ``layers/common`` Lambda
layer, one AWS SAM template (``template.yaml``), the local deployer (``deploy.py``:
``python -m cloudlab pipeline deploy``) that packages, translates and creates it through
CloudFormation on the course's backend, ``python -m cloudlab pipeline run`` that pushes the
image set through it, and the browser client in ``web/`` (an upload page hosted as an S3 website).
"""
