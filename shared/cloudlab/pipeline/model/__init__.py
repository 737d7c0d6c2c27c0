"""The capstone's custom moderation model: trained by ``train.py`` on data/moderation (notebook 06)."""
