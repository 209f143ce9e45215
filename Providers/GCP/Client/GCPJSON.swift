import StratumCloud

/// A JSON document as the Compute and Storage REST APIs send and receive it.
public typealias GCPJSON = CloudJSON
