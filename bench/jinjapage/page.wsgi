# The .wsgi file of the 100-row Jinja page (bench/speed), for wasgi and
# mod_wsgi alike; bench/ must be on the Python path.
from jinjapage import app as application
