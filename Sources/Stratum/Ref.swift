/// Anything that can be a resource input: a literal or a typed reference to another
/// resource's attribute. Using a reference creates the dependency edge.
public protocol ValueExpression: Sendable {
    var value: Value { get }
}

/// A typed reference to an attribute of another resource, known after that resource is applied.
public struct Ref<T: Sendable>: ValueExpression, Hashable {
    public let reference: AttributeReference

    public init(_ address: ResourceAddress, _ attribute: String) {
        self.reference = AttributeReference(address: address, attribute: attribute)
    }

    public var value: Value { .reference(reference) }
}

extension String: ValueExpression { public var value: Value { .string(self) } }
extension Int: ValueExpression { public var value: Value { .int(self) } }
extension Bool: ValueExpression { public var value: Value { .bool(self) } }
extension Double: ValueExpression { public var value: Value { .double(self) } }
extension Value: ValueExpression { public var value: Value { self } }

extension Array: ValueExpression where Element: ValueExpression {
    public var value: Value { .list(map(\.value)) }
}

extension Dictionary: ValueExpression where Key == String, Value: ValueExpression {
    public var value: StratumCore.Value { .map(mapValues(\.value)) }
}

/// A string-valued input: a literal `String` or a `Ref<String>`.
public protocol StringExpression: ValueExpression {}
extension String: StringExpression {}
extension Ref: StringExpression where T == String {}
