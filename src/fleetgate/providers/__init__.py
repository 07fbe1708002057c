"""PKI providers: where a project's CA certificates and device certificates come from.

- :mod:`.base`: the interface (list CA certificates, issue from a CSR,
  status) and its value types;
- :mod:`.offline`: CA certificates uploaded by hand, no issuing;
- :mod:`.local`: a CA key and certificate in files;
- :mod:`.aws_pca`: AWS Private CA through boto3;
- :mod:`.sync`: building a project's provider and syncing its CAs.
"""
