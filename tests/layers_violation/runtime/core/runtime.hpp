// A file of a room that is not below device/.
#pragma once
