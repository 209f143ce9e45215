import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// An XML element read into memory: AWS responses are small documents of nested elements
/// with text leaves, so a tree with typed lookups is all the providers need.
public final class XMLTree: Sendable {
    public let name: String
    public let text: String
    public let children: [XMLTree]

    init(name: String, text: String, children: [XMLTree]) {
        self.name = name
        self.text = text
        self.children = children
    }

    /// The first child called `name`.
    public subscript(_ name: String) -> XMLTree? { children.first { $0.name == name } }

    /// Every child called `name`.
    public func all(_ name: String) -> [XMLTree] { children.filter { $0.name == name } }

    /// Text of the element at `path` (child names separated by `/`), trimmed.
    public func string(_ path: String) -> String? {
        var node: XMLTree? = self
        for part in path.split(separator: "/") { node = node?[String(part)] }
        guard let node else { return nil }
        return node.text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The `<item>` children of the element at `path` (EC2's list shape).
    public func items(_ path: String) -> [XMLTree] {
        var node: XMLTree? = self
        for part in path.split(separator: "/") { node = node?[String(part)] }
        return node?.all("item") ?? []
    }

    /// The first element called `name` anywhere below (depth first), or self.
    public func first(named name: String) -> XMLTree? {
        if self.name == name { return self }
        for child in children { if let found = child.first(named: name) { return found } }
        return nil
    }

    /// Parses `data`; nil when it is not well-formed XML.
    public static func parse(_ data: Data) -> XMLTree? {
        let builder = TreeBuilder()
        let parser = XMLParser(data: data)
        parser.delegate = builder
        parser.shouldProcessNamespaces = false
        guard parser.parse() else { return nil }
        return builder.root
    }
}

private final class TreeBuilder: NSObject, XMLParserDelegate {
    struct Open {
        var name: String
        var text = ""
        var children: [XMLTree] = []
    }
    var stack: [Open] = []
    var root: XMLTree?

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
        stack.append(Open(name: elementName))
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        guard !stack.isEmpty else { return }
        stack[stack.count - 1].text += string
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        guard let open = stack.popLast() else { return }
        let element = XMLTree(name: open.name, text: open.children.isEmpty ? open.text : "", children: open.children)
        if stack.isEmpty {
            root = element
        } else {
            stack[stack.count - 1].children.append(element)
        }
    }
}

extension String {
    /// The text with XML's five special characters escaped.
    public var xmlEscaped: String {
        var out = ""
        for ch in self {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(ch)
            }
        }
        return out
    }
}
