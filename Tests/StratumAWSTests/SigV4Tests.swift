import Foundation
import StratumAWS
import StratumCloud
import Testing

/// The published AWS SigV4 test suite: credentials AKIDEXAMPLE, region us-east-1, service
/// `service`, signed at 2015-08-30T12:36:00Z. Each case checks the canonical request (or its
/// hash), the string to sign and the Authorization header separately, so a failure says
/// which step is wrong.
@Suite("SigV4 test suite")
struct SigV4Tests {
    static let credentials = AWSCredentials(accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    static let date = Date(timeIntervalSince1970: 1_440_938_160)  // 20150830T123600Z
    static let signer = SigV4Signer(service: "service", region: "us-east-1")
    static let scope = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"

    @Test func amzDateFormat() {
        #expect(SigV4Signer.amzDate(Self.date) == "20150830T123600Z")
    }

    @Test func getVanilla() {
        var request = SignableRequest(method: "GET", path: "/", headers: [("Host", "example.amazonaws.com")])
        let signed = Self.signer.sign(&request, credentials: Self.credentials, date: Self.date)
        #expect(signed.canonicalRequest == """
            GET
            /

            host:example.amazonaws.com
            x-amz-date:20150830T123600Z

            host;x-amz-date
            e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
            """)
        #expect(signed.authorization == "AWS4-HMAC-SHA256 Credential=\(Self.scope), SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
        #expect(request.header("authorization") == signed.authorization)
    }

    @Test func getVanillaQueryOrderKeyCase() {
        var request = SignableRequest(method: "GET", path: "/", query: [("Param2", "value2"), ("Param1", "value1")], headers: [("Host", "example.amazonaws.com")])
        let signed = Self.signer.sign(&request, credentials: Self.credentials, date: Self.date)
        #expect(signed.canonicalRequest.split(separator: "\n", omittingEmptySubsequences: false)[2] == "Param1=value1&Param2=value2")
        #expect(SigV4Signer.sha256Hex(Data(signed.canonicalRequest.utf8)) == "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0")
        #expect(signed.signature == "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")
    }

    @Test func postXWWWFormURLEncoded() {
        var request = SignableRequest(
            method: "POST", path: "/", headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Host", "example.amazonaws.com")],
            body: Data("Param1=value1".utf8))
        let signed = Self.signer.sign(&request, credentials: Self.credentials, date: Self.date)
        #expect(signed.canonicalRequest == """
            POST
            /

            content-type:application/x-www-form-urlencoded
            host:example.amazonaws.com
            x-amz-date:20150830T123600Z

            content-type;host;x-amz-date
            9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e
            """)
        #expect(signed.stringToSign == """
            AWS4-HMAC-SHA256
            20150830T123600Z
            20150830/us-east-1/service/aws4_request
            42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281
            """)
        #expect(signed.authorization == "AWS4-HMAC-SHA256 Credential=\(Self.scope), SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a")
    }

    @Test func sessionTokenIsSignedAndHeaderValuesAreTrimmed() {
        var creds = Self.credentials
        creds.sessionToken = "TOKEN"
        var request = SignableRequest(method: "GET", path: "/", headers: [("Host", "example.amazonaws.com"), ("My-Header1", "  value1   with  spaces ")])
        let signed = Self.signer.sign(&request, credentials: creds, date: Self.date)
        #expect(signed.canonicalRequest.contains("my-header1:value1 with spaces\n"))
        #expect(signed.canonicalRequest.contains("x-amz-security-token:TOKEN\n"))
        #expect(request.header("X-Amz-Security-Token") == "TOKEN")
    }

    @Test func percentEncodingFollowsAWSRules() {
        #expect(AWSPercentEncoding.encode("a b+c/d~e") == "a%20b%2Bc%2Fd~e")
        #expect(AWSPercentEncoding.encode("a b/c", keepSlash: true) == "a%20b/c")
        #expect(AWSPercentEncoding.encode("é") == "%C3%A9")
    }
}
