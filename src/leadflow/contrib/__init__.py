"""Optional glue for web frameworks and task queues, each imported only when used.

``leadflow.contrib.fastapi`` (the ``fastapi`` extra): a router with the seed's endpoints on the
role-checked operations, the error mapping, and the rule format's JSON Schema. Importing
``leadflow`` never imports anything under here.
"""
