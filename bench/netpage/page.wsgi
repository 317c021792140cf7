# The .wsgi file of bench/network's Flask page (one pg8000 query per
# request); bench/ and the directory of netpage_config must be on the path.
from netpage import app as application
