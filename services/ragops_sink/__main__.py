from ragops_sink.app import main

main()
