# bench/djangohello served by wasgi: --python-path bench and Django's packages.
from djangohello.app import application
