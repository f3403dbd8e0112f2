"""An order pipeline on Celery whose every task is one trace with the checkout that started it."""
