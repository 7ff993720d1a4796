# MDEQ-Small with the reference's budgets on the speed task (see
# _base_demo.py): the baseline every option is compared with.
_base_ = ['./_base_demo.py']
