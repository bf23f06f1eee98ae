// corpus driver for jsoncpp: parses, edits and writes the document in the file named by its
// argument in a loop that never ends, and prints one line per round showing results of the
// library's reader, value, writer and exception code. Built by tests/corpus/fetch.sh against the static libjsoncpp.a
// that jsoncpp's own CMake build made, with the same flags (RelWithDebInfo).
#include <json/json.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>

int main(int argc, char **argv) {
    if (argc != 2) {
        std::cerr << "usage: work FILE.json" << std::endl;
        return 2;
    }
    std::ifstream file(argv[1]);
    const std::string text((std::istreambuf_iterator<char>(file)),
                           std::istreambuf_iterator<char>());
    Json::CharReaderBuilder readers;
    Json::StreamWriterBuilder writers;
    writers["indentation"] = "";
    for (long round = 1;; round++) {
        Json::Value doc;
        std::string out;
        long total = 0;
        // The hot path: the reader, Value's map and the writer run all the time.
        for (int k = 0; k < 3000; k++) {
            std::string errors;
            std::unique_ptr<Json::CharReader> reader(readers.newCharReader());
            if (!reader->parse(text.data(), text.data() + text.size(), &doc, &errors)) {
                std::cout << "parse error: " << errors << std::endl;
                return 1;
            }
            doc["round"] = Json::Int64(round);
            total += doc["nested"]["k"][1].asInt64();
            out = Json::writeString(writers, doc);
        }
        // A string is not convertible to an integer: jsoncpp throws Json::LogicError.
        std::string thrown = "nothing thrown";
        try {
            total += doc["name"].asInt();
        } catch (const Json::LogicError &e) {
            thrown = e.what();
        }
        std::cout << out << " total=" << total << " | " << thrown << std::endl;
    }
}
