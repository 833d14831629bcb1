"""The plumbing both services run on, apart from the domain: database pools (``db``), logging
(``log``), background tasks and how they stop (``tasks``), serving a process or N of them
(``runner``, ``group_metrics``), health endpoints (``health``), the hot-path HTTP/1.1 client
(``http1``) and bounded reads of remote receivers (``receiver_fetch``)."""
